"""Print one of the README's two commands (`main` or `test`), so CI runs exactly what the README says.

The README marks each command with an HTML comment (`<!-- command:test -->`) on the line before its
fenced code block; the command is the block's content.
"""

import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_command(name: str, text: str | None = None) -> str:
    lines = (README.read_text() if text is None else text).splitlines()
    marker = f"<!-- command:{name} -->"
    start = lines.index(marker) + 1
    if not lines[start].startswith("```"):
        raise ValueError(f"README.md: the line after {marker} must open a code block")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    return "\n".join(
        line for line in lines[start + 1 : end] if line.strip() and not line.lstrip().startswith("#")
    )


if __name__ == "__main__":
    print(readme_command(sys.argv[1]))
