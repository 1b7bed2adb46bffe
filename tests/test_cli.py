"""The command line: version, help without developer text, errors that name the flag."""

from __future__ import annotations

import re

from typer.testing import CliRunner

import nds
from nds.cli import app


def test_version():
    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"nds {nds.__version__}"


def test_help_is_for_users():
    """No docstring sections (Raises:, Args:, :class:) and no markup eaten: "[sweep]" prints."""
    for args in (["--help"], ["study", "--help"], ["cards", "--help"]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0
        for dev in ("Raises:", "Args:", ":class:", "typer.Exit", "``"):
            assert dev not in r.stdout, (args, dev)
    r = CliRunner().invoke(app, ["study", "--help"])
    assert "[sweep]" in r.stdout and "--format" in r.stdout


def test_flag_errors_name_the_flag(tmp_path):
    for args, flag in ((["study", "--chips", "0"], "--chips"), (["study", "--seed", "-1"], "--seed"),
                       (["study", "--format", "html"], "--format")):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2 and flag in r.output, (args, r.output)
    f = tmp_path / "file"
    f.write_text("")
    r = CliRunner().invoke(app, ["study", "--out", str(f)])
    assert r.exit_code == 2 and re.search(r"--out .*not a folder", r.output), r.output
    r = CliRunner().invoke(app, ["study", str(tmp_path / "nope.toml")])
    assert r.exit_code == 2 and "nope.toml: no such study file" in r.output
