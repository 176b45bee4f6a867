"""The ``avnas`` command's exit codes and error lines: usage errors, user errors, bugs, interrupts, ``bench``."""

from __future__ import annotations

import pytest

from avnas_nni import cli
from avnas_nni.errors import DataError
from avnas_nni.pipeline import RunSettings


def _failing(exc: BaseException):
    def command(args):
        raise exc
    return command


def _lightning_interrupt(args):
    """What Lightning does on Ctrl-C: a graceful shutdown, then sys.exit(1) inside the KeyboardInterrupt handler."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise SystemExit(1) from None


# --- avnas bench ----------------------------------------------------------------------------------------------

def test_bench_help_exits_0_like_every_subcommand(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "table2", "--help"])
    out, err = capsys.readouterr()
    assert info.value.code == 0 and out.startswith("usage: avnas bench table2") and "--seeds" in out
    assert "interrupted" not in out + err
    with pytest.raises(SystemExit) as info:
        cli.main(["search", "--help"])
    assert info.value.code == 0


@pytest.mark.parametrize(("argv", "message"), [
    (["table2", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["table2", "--seeds", "0"], "--seeds: expected a positive integer or BITS:N for each of --bits [32, 64], got '0'"),
    (["table2", "--bits", "32,x"], "--bits: expected comma-separated integers"),
    (["table2", "--rows", "Nope"], "--rows: unknown row(s) ['Nope']"),
    (["scan_speed", "--batch", "0"], "--batch must be >= 1, got 0"),
    (["metrics_speed", "--queries", "-1"], "--queries must be >= 1, got -1"),
    (["supernet_speed", "--warmup", "9", "--batches", "3"], "--warmup must be in [0, --batches)"),
    (["knn_speed", "--bits", "32"], "--bits: this benchmark measures 64-bit codes"),
])
def test_bad_benchmark_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", *argv])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert err.startswith("usage: ") and f"error: {message}" in err and "interrupted" not in err


def test_bench_runs_a_benchmark(capsys):
    assert cli.main(["bench", "metrics_speed", "--queries", "20", "--database", "60", "--classes", "4"]) == 0
    assert "mAP@100 on random codes" in capsys.readouterr().out


def test_an_unknown_benchmark_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "nope"])
    assert info.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


# --- user errors, bugs, interrupts ------------------------------------------------------------------------------

def test_user_errors_are_one_line_exit_2(tmp_path, capsys):
    assert cli.main(["space", "--preset", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("avnas: error: unknown preset 'nope'")
    assert cli.main(["space", "--kernel-size", "0"]) == 2
    assert capsys.readouterr().err == "avnas: error: kernel_size: expected a positive integer, got 0\n"
    assert cli.main(["data", "synth", "--out", str(tmp_path / "s"), "--classes", "1"]) == 2
    assert capsys.readouterr().err == "avnas: error: num_class must be at least 2, got 1\n"
    with pytest.raises(ValueError, match="bits"):  # a SettingsError is still a ValueError for library callers
        RunSettings(bits=0)


def test_a_user_error_with_v_is_still_one_line(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_cmd_space", _failing(DataError("config.json: 'm' must be an integer")))
    assert cli.main(["-v", "space"]) == 2
    err = capsys.readouterr().err
    assert err == "avnas: error: config.json: 'm' must be an integer\n"


def test_a_bug_is_not_dressed_as_a_user_error(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_cmd_space", _failing(ValueError("operands could not be broadcast")))
    assert cli.main(["space"]) == 1
    err = capsys.readouterr().err
    assert err == ("avnas: internal error: ValueError: operands could not be broadcast "
                   "(rerun with -v for the traceback)\n")


def test_v_shows_the_traceback_of_a_bug(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_cmd_space", _failing(KeyError("visual/M1")))
    assert cli.main(["-v", "space"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and 'raise exc' in err
    assert err.rstrip().splitlines()[-1] == "avnas: internal error: KeyError: 'visual/M1'"


@pytest.mark.parametrize("command", [_failing(KeyboardInterrupt()), _lightning_interrupt])
def test_an_interrupt_exits_130(monkeypatch, capsys, command):
    monkeypatch.setattr(cli, "_cmd_space", command)
    assert cli.main(["space"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_a_plain_system_exit_keeps_its_code(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_cmd_space", _failing(SystemExit(2)))
    with pytest.raises(SystemExit) as info:
        cli.main(["space"])
    assert info.value.code == 2 and "interrupted" not in capsys.readouterr().err
