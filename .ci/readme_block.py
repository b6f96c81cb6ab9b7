"""Print a bash block of the README, so CI runs the README's lines as written:
``python3 .ci/readme_block.py install`` -> the first ```bash block under "## Install";
``python3 .ci/readme_block.py docs`` -> the ```bash block that builds the documentation."""

import pathlib
import re
import sys

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"```bash\n(.*?)```", re.S)


def block(name: str, text: str) -> str:
    if name == "install":
        return BLOCK.search(text, text.index("\n## Install\n")).group(1)
    if name == "docs":
        return next(m.group(1) for m in BLOCK.finditer(text) if "mkdocs build" in m.group(1))
    raise SystemExit(f"readme_block.py: unknown block {name!r} (install | docs)")


if __name__ == "__main__":
    print(block(sys.argv[1], README.read_text()), end="")
