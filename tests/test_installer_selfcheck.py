"""The installer verifies its whole self before it writes anything: line 3 checks the sha256 of
the file (without line 2, which holds it), line 4 checks that line 3 is intact. Every single-bit
flip in the check lines, and a seeded sample across the rest of the header, is caught: a
non-zero exit, nothing written, the installer file unchanged. A real installer made of a
rendered header and stand-in decoder and payload bytes (the flips never get that far); the
flipped installers run as an unprivileged user where we are root (a flip that turned a
redirection into a file write would otherwise write as root).

DXFORGE_FLIP_ALL=1 flips every bit of lines 1-4 (some minutes) instead of the sample."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from test_shell import rendered_header

from dxforge.installer.shell import seal, self_sha256, verify
from dxforge.isolation import isolate

SEED = 22


def sealed_installer(tmp_path: Path) -> bytes:
    header = rendered_header(tmp_path, True).read_bytes()
    rng = random.Random(SEED)
    rest = bytes(rng.randrange(256) for _ in range(1000 + 12345))  # decoder, payload sizes
    data = seal(header, self_sha256(header, [rest])) + rest
    assert verify(data)
    return data


def line_spans(data: bytes, count: int) -> list[tuple[int, int]]:
    """(start, end) of the first ``count`` lines, newline included."""
    spans, start = [], 0
    for _ in range(count):
        end = data.index(b"\n", start) + 1
        spans.append((start, end))
        start = end
    return spans


class Runner:
    """Runs installers in a directory of their own, as an unprivileged user where we are root."""

    def __init__(self, tmp_path: Path) -> None:
        self.base = tmp_path / "flip"
        self.base.mkdir(mode=0o755)
        self.base.chmod(0o755)
        self.prefix: list[str] = []
        if os.geteuid() == 0 and isolate.reachable(self.base) and shutil.which("setpriv"):
            self.prefix = isolate.as_user(isolate.NOBODY)
            os.chown(self.base, isolate.NOBODY, isolate.NOBODY)

    def run(self, data: bytes, shell: str = "sh", timeout: float = 20) -> tuple[int, list[str]]:
        """(exit status, what the run left in its directory besides the installer)."""
        inst = self.base / "inst.sh"
        inst.write_bytes(data)
        inst.chmod(0o444)
        env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "TMPDIR": "/nonexistent"}
        try:
            res = subprocess.run(
                [*self.prefix, shell, str(inst), "-b", "-p", str(self.base / "p")],
                cwd=self.base,
                env=env,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
            code = res.returncode
        except subprocess.TimeoutExpired:
            code = -999  # a hang is not a refusal
        left = sorted(p.name for p in self.base.iterdir() if p.name != "inst.sh")
        if inst.read_bytes() != data:
            left.append("inst.sh changed")
        for name in left:
            if name != "inst.sh changed":
                isolate.remove(self.base / name) if (self.base / name).is_dir() else (
                    self.base / name
                ).unlink()
        inst.chmod(0o644)
        inst.unlink()
        return code, left


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def assert_all_caught(runner: Runner, data: bytes, bits: list[int]) -> None:
    missed = []
    for bit in bits:
        code, left = runner.run(flip(data, bit))
        if code in (0, -999) or left:
            missed.append((bit // 8, bit % 8, code, left))
    assert not missed, f"{len(missed)} flips not caught (byte, bit, rc, written): {missed[:20]}"


def test_intact_installer_passes_the_checks(tmp_path: Path) -> None:
    """The sealed stand-in gets past both checks (its payload then fails to unpack, and the
    staging directory goes): the checks accept what the build wrote."""
    data = sealed_installer(tmp_path)
    runner = Runner(tmp_path)
    inst = runner.base / "inst.sh"
    inst.write_bytes(data)
    res = subprocess.run(
        [*runner.prefix, "sh", str(inst), "-b", "-p", str(runner.base / "p")],
        cwd=runner.base,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "cannot verify" not in res.stderr and "is damaged" not in res.stderr, res.stderr
    assert "Unpacking" in res.stderr


def test_every_bit_of_the_check_lines_is_caught(tmp_path: Path) -> None:
    data = sealed_installer(tmp_path)
    spans = line_spans(data, 4)
    bits = [b for start, end in spans for b in range(start * 8, end * 8)]
    if not os.environ.get("DXFORGE_FLIP_ALL"):
        bits = sorted(random.Random(SEED).sample(bits, 300))
    assert_all_caught(Runner(tmp_path), data, bits)


def test_a_sample_of_flips_across_the_header_is_caught(tmp_path: Path) -> None:
    data = sealed_installer(tmp_path)
    header_end = len(data) - 1000 - 12345
    start = line_spans(data, 4)[-1][1]
    bits = sorted(random.Random(SEED).sample(range(start * 8, header_end * 8), 40))
    bits += sorted(random.Random(SEED + 1).sample(range(header_end * 8, len(data) * 8), 10))
    assert_all_caught(Runner(tmp_path), data, bits)


@pytest.mark.parametrize("change", ["version", "truncate", "append", "concatenate"])
def test_changed_version_truncation_and_appended_bytes_are_caught(
    tmp_path: Path, change: str
) -> None:
    """A changed version string in the header (an attack the size check never saw), a
    truncated file, bytes appended, two installers concatenated."""
    data = sealed_installer(tmp_path)
    bad = {
        "version": data.replace(b"INSTALLER_VER='1.0.0'", b"INSTALLER_VER='9.0.0'"),
        "truncate": data[:-100],
        "append": data + b"\n",
        "concatenate": data + data,
    }[change]
    assert bad != data
    runner = Runner(tmp_path)
    for shell in ("sh", "bash"):
        code, left = runner.run(bad, shell)
        assert code != 0 and not left, (shell, code, left)


def test_sourcing_is_refused_without_exiting_an_interactive_shell(tmp_path: Path) -> None:
    """`. installer` in an interactive dash or bash: a clear refusal, the shell goes on (and
    says nothing of a file it cannot open)."""
    data = sealed_installer(tmp_path)
    runner = Runner(tmp_path)
    inst = runner.base / "inst.sh"
    inst.write_bytes(data)
    for shell in ("sh", "bash"):
        res = subprocess.run(
            [*runner.prefix, shell, "-i"],
            input=f". {inst}\necho still-here\n",
            cwd=runner.base,
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "PS1": ""},
            check=False,
        )
        assert "still-here" in res.stdout, (shell, res.stdout, res.stderr)
        assert "it was sourced (run it with sh)" in res.stderr, (shell, res.stderr)
        assert "cannot open" not in res.stderr, (shell, res.stderr)
    assert sorted(p.name for p in runner.base.iterdir()) == ["inst.sh"]
