import logging
import os
import re
import subprocess
import sys

import pytest

from squall import log
from squall.log import LogFormatter, define_logging_options, enable_pretty_logging
from squall.options import OptionParser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_logger(name, formatter, path):
    logger = logging.Logger(name)
    logger.propagate = False
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    return logger, handler


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_logger_names():
    assert log.access_log.name == "squall.access"
    assert log.app_log.name == "squall.application"
    assert log.gen_log.name == "squall.general"


def test_format_prefix_colors_and_messages(tmp_path):
    formatter = LogFormatter(color=False)
    formatter._colors = {logging.ERROR: "\x01"}
    formatter._normal = "\x02"
    path = tmp_path / "out.log"
    logger, handler = make_logger("fmt", formatter, path)
    logger.error("caf\u00e9")
    logger.error(b"\xe9")
    logger.warning("plain")
    handler.close()
    lines = read(path).splitlines()
    assert re.match(r"^\x01\[E \d{6} \d\d:\d\d:\d\d test_log:\d+\]\x02 café$", lines[0])
    assert lines[1].endswith(r"b'\xe9'")
    # Levels without a colour get no escape codes.
    assert re.match(r"^\[W [^]]+\] plain$", lines[2])


def test_tracebacks_and_continuation_lines_are_indented(tmp_path):
    path = tmp_path / "out.log"
    logger, handler = make_logger("tb", LogFormatter(color=False), path)
    try:
        raise ValueError(b"\xe9")
    except ValueError:
        logger.exception("first\nsecond")
    handler.close()
    lines = read(path).rstrip("\n").split("\n")
    assert lines[0].endswith("] first")
    assert lines[1] == "    second"
    assert lines[2] == "    Traceback (most recent call last):"
    assert all(line.startswith("    ") for line in lines[1:])
    assert re.search(r"ValueError: b'\\xe9'", lines[-1])


def test_bad_format_arguments_are_reported_not_raised(tmp_path):
    path = tmp_path / "out.log"
    logger, handler = make_logger("bad", LogFormatter(color=False), path)
    logger.error("%d", "not a number")
    handler.close()
    assert "Bad message" in read(path)


def test_brace_style_format(tmp_path):
    path = tmp_path / "out.log"
    formatter = LogFormatter(fmt="{color}{levelname}{end_color}:{message}", style="{", color=False)
    logger, handler = make_logger("brace", formatter, path)
    logger.info("hi")
    handler.close()
    assert read(path) == "INFO:hi\n"


@pytest.mark.parametrize("mode", ["size", "time"])
def test_enable_pretty_logging_to_file(tmp_path, mode):
    options = OptionParser()
    define_logging_options(options)
    options.log_file_prefix = str(tmp_path / "app")
    options.log_rotate_mode = mode
    logger = logging.Logger("pretty")
    logger.propagate = False
    enable_pretty_logging(options=options, logger=logger)
    try:
        assert len(logger.handlers) == 1
        logger.error("hello")
        logger.handlers[0].flush()
        files = list(tmp_path.iterdir())
        assert len(files) == 1
        assert re.match(r"^\[E [^]]*\] hello$", read(files[0]))
    finally:
        for handler in logger.handlers:
            handler.close()


def test_enable_pretty_logging_rejects_unknown_rotate_mode():
    options = OptionParser()
    define_logging_options(options)
    options.log_file_prefix = "unused"
    options.log_rotate_mode = "sometimes"
    with pytest.raises(ValueError):
        enable_pretty_logging(options=options, logger=logging.Logger("x"))


def test_enable_pretty_logging_none_leaves_logger_alone():
    options = OptionParser()
    define_logging_options(options)
    options.logging = "none"
    logger = logging.Logger("untouched")
    enable_pretty_logging(options=options, logger=logger)
    assert logger.handlers == [] and logger.level == logging.NOTSET


def logs_info(statement, args=()):
    program = (
        "from squall.options import options, parse_command_line;"
        + statement
        + ";import logging; logging.info('hello')"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout
    return b"hello" in result.stdout


def test_parse_command_line_enables_logging_unless_disabled():
    assert not logs_info("pass")
    assert logs_info("parse_command_line()")
    assert not logs_info("parse_command_line()", ["--logging=None"])
    assert not logs_info("options.logging = None; parse_command_line()")
    assert logs_info("options.logging = None; parse_command_line()", ["--logging=info"])


def test_color_terminal_gets_escape_codes(tmp_path, monkeypatch):
    monkeypatch.setattr(log, "_stderr_supports_color", lambda: True)
    formatter = LogFormatter()
    assert set(formatter._colors) == set(LogFormatter.DEFAULT_COLORS)
    path = tmp_path / "out.log"
    logger, handler = make_logger("color", formatter, path)
    logger.error("red alert")
    handler.close()
    line = read(path)
    assert line.startswith(formatter._colors[logging.ERROR] + "[E ")
    assert formatter._normal + " red alert" in line
    assert "\x1b" in line
