"""Live captions on a terminal, as the demo shows them: finals scroll, partials stay live.

Every final caption is printed as a line of its own. On a terminal, the partials of the
participants speaking right now are shown below the finals, one line per participant, each
rewritten in place as their words come in: people who talk over each other each keep their
own live line. When a participant's final arrives it is printed above that block and their
live line goes away; other lines of the meeting (:meth:`TerminalCaptions.note`: what the
agent is asked and does) are printed there too. Anything that is not a terminal gets the
finals and those lines only.
"""

from __future__ import annotations

import shutil
from typing import Final, TextIO

from agent.captions import Caption

_CLEAR_LINE: Final = "\r\033[K"
_CLEAR_DOWN: Final = "\033[J"


def clock(seconds: float) -> str:
    """``mm:ss.s`` for a caption's start."""
    return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"


class TerminalCaptions:
    """A caption sink (``publish``) that draws finals and live partials (see the module doc)."""

    def __init__(self, out: TextIO, *, width: int | None = None) -> None:
        """Write to ``out``; partials only when it is a terminal.

        Args:
            out: The stream to draw on.
            width: Columns to draw in; ``None``: the terminal's. A live line is cut to fit,
                since a line that wraps would break the cursor arithmetic that redraws them.
        """
        self._out = out
        self._tty = out.isatty()
        self._width = width
        self._live: dict[str, str] = {}  # participant -> partial text, in order of arrival
        self._drawn = 0  # live lines on the screen below the finals

    async def publish(self, caption: Caption) -> None:
        """Show one caption."""
        if not self._tty:
            if caption.final:
                self._out.write(self._final_line(caption) + "\n")
                self._out.flush()
            return
        self._erase()
        if caption.final:
            self._live.pop(caption.participant, None)
            self._out.write(self._final_line(caption) + "\n")
        elif caption.text:
            self._live[caption.participant] = caption.text
        else:
            self._live.pop(caption.participant, None)
        self._draw()
        self._out.flush()

    def note(self, line: str) -> None:
        """Print a line of the meeting's other events (the agent speaking) among the finals.

        It goes above the live lines, like a final, so the partials keep their place.
        """
        self._erase()
        self._out.write(line + "\n")
        if self._tty:
            self._draw()
        self._out.flush()

    def close(self) -> None:
        """Take the live lines off the screen (the meeting is over)."""
        if self._tty:
            self._erase()
            self._live.clear()
            self._out.flush()

    @staticmethod
    def _final_line(caption: Caption) -> str:
        return f"  [{clock(caption.start_s)}] {caption.participant:>6}: {caption.text}"

    def _erase(self) -> None:
        # The cursor sits at the end of the last live line: back to the block's first line,
        # then clear to the end of the screen.
        if self._drawn:
            up = f"\033[{self._drawn - 1}A" if self._drawn > 1 else ""
            self._out.write(f"\r{up}{_CLEAR_DOWN}")
        self._drawn = 0

    def _draw(self) -> None:
        columns = self._width or shutil.get_terminal_size().columns
        lines = [
            _fit(f"  ...    {who:>6}: ", text, columns - 1) for who, text in self._live.items()
        ]
        if lines:
            self._out.write(_CLEAR_LINE + "\n".join(lines))
        self._drawn = len(lines)


def _fit(prefix: str, text: str, width: int) -> str:
    """``prefix + text`` in ``width`` columns, keeping the newest words (the end of ``text``)."""
    if len(prefix) + len(text) <= width:
        return prefix + text
    room = width - len(prefix) - 1
    return (prefix + "…" + text[-room:]) if room > 0 else prefix[: max(1, width)]
