"""The QR codes a person scans decode to exactly the otpauth URI.

zbarimg (Debian's zbar-tools, installed by tests/ensure-test-packages.sh) plays
the phone: it reads the PNG that Enroll returns and the half-block QR code that
`totpctl enroll` prints, re-drawn as an image.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import Totpctl, field
from tests.conftest import IN_CI

ZBARIMG = shutil.which("zbarimg")
SCALE = 4  # pixels per QR module, so the decoder sees crisp edges

pytestmark = pytest.mark.skipif(
    ZBARIMG is None and not IN_CI, reason="install zbar-tools to decode QR codes"
)


def decode(image: Path) -> str:
    assert ZBARIMG, "CI must have zbarimg (tests/ensure-test-packages.sh installs zbar-tools)"
    done = subprocess.run(
        [ZBARIMG, "--quiet", "--raw", str(image)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.rstrip("\n")


def terminal_qr_to_pbm(lines: list[str], path: Path) -> None:
    """Re-draw segno's compact terminal output: each character is two modules
    high, and a drawn half-block is a light module (made for dark terminals)."""
    upper_dark, lower_dark = {" ", "▄"}, {" ", "▀"}
    rows: list[list[int]] = []
    for line in lines:
        rows.append([1 if ch in upper_dark else 0 for ch in line])
        rows.append([1 if ch in lower_dark else 0 for ch in line])
    width = max(len(row) for row in rows)
    pixels = []
    for row in rows:
        padded = row + [0] * (width - len(row))
        scaled = " ".join(str(bit) for bit in padded for _ in range(SCALE))
        pixels.extend([scaled] * SCALE)
    path.write_text(f"P1\n{width * SCALE} {len(rows) * SCALE}\n" + "\n".join(pixels) + "\n")


def test_png_and_terminal_qr_decode_to_the_uri(totpctl: Totpctl, tmp_path: Path) -> None:
    png = tmp_path / "qr.png"
    enrolled = totpctl("enroll", "alice@example.com", "--issuer", "Example Corp", "--png", str(png))
    assert enrolled.exit_code == 0
    uri = field(enrolled.out, "uri")
    assert uri.startswith("otpauth://totp/Example%20Corp:alice%40example.com?")

    assert decode(png) == uri

    qr_lines = [line for line in enrolled.out.splitlines() if line and set(line) <= set("█▀▄ ")]
    assert len(qr_lines) > 20
    image = tmp_path / "terminal.pbm"
    terminal_qr_to_pbm(qr_lines, image)
    assert decode(image) == uri
