import datetime
import io
import sys
from unittest import mock

import pytest

from squall.options import Error, OptionParser


def test_command_line_values_are_typed_and_rest_is_returned():
    options = OptionParser()
    options.define("port", default=80)
    options.define("verbose", default=False)
    options.define("ratio", type=float)
    rest = options.parse_command_line(
        ["prog", "--port=443", "--verbose", "--ratio=1.5", "run", "--port=1"]
    )
    assert rest == ["run", "--port=1"]
    assert options.port == 443 and options.verbose is True and options.ratio == 1.5
    assert options.parse_command_line(["prog", "--", "--port=2"]) == ["--port=2"]
    assert options.port == 443


def test_bad_command_lines_raise_clear_errors():
    options = OptionParser()
    options.define("port", default=80)
    with pytest.raises(Error, match="requires a value"):
        options.parse_command_line(["prog", "--port"])
    with pytest.raises(ValueError):
        options.parse_command_line(["prog", "--port=eighty"])
    with mock.patch("sys.stderr", io.StringIO()):
        with pytest.raises(Error, match="Unrecognized command line option"):
            options.parse_command_line(["prog", "--nope=1"])


def test_help_prints_usage_and_exits():
    options = OptionParser()
    options.define("with_underscore", help="documented", group="g")
    stream = io.StringIO()
    with mock.patch("sys.stderr", stream), pytest.raises(SystemExit):
        options.parse_command_line(["prog", "--help"])
    assert "Usage:" in stream.getvalue()
    assert "--with-underscore" in stream.getvalue()


def test_datetime_timedelta_bool_and_multiple_types():
    options = OptionParser()
    options.define("when", type=datetime.datetime)
    options.define("span", type=datetime.timedelta)
    options.define("flag", type=bool)
    options.define("ids", type=int, multiple=True)
    options.define("names", type=str, multiple=True)
    options.parse_command_line(
        [
            "prog",
            "--when=2013-04-28 05:16",
            "--span=1h 30m 2.5s",
            "--flag=false",
            "--ids=1,3,5:7",
            "--names=a,b",
        ]
    )
    assert options.when == datetime.datetime(2013, 4, 28, 5, 16)
    assert options.span == datetime.timedelta(hours=1, minutes=30, seconds=2.5)
    assert options.flag is False
    assert options.ids == [1, 3, 5, 6, 7]
    assert options.names == ["a", "b"]
    options.parse_command_line(["prog", "--span=45", "--when=20130428"])
    assert options.span == datetime.timedelta(seconds=45)
    with pytest.raises(Error, match="date/time"):
        options.parse_command_line(["prog", "--when=yesterday"])
    with pytest.raises(Error):
        options.parse_command_line(["prog", "--span=3 fortnights"])
    with pytest.raises(Error, match="more than"):
        options.parse_command_line(["prog", "--ids=1:1000000000000"])


def test_attribute_and_item_access_check_types_and_run_callbacks():
    seen = []
    options = OptionParser()
    options.define("foo-bar", default=1, type=int, callback=seen.append)
    options.foo_bar = 2
    options["foo-bar"] = 3
    assert options["foo_bar"] == 3 and seen == [2, 3]
    with pytest.raises(Error):
        options.foo_bar = "4"
    with pytest.raises(AttributeError):
        _ = options.missing
    with pytest.raises(AttributeError):
        options.missing = 1
    assert "foo_bar" in options and "missing" not in options


def test_redefining_an_option_fails_whatever_the_separator():
    options = OptionParser()
    options.define("foo_bar")
    with pytest.raises(Error, match="foo.bar.*already defined"):
        options.define("foo-bar")


def test_introspection_keeps_original_names_and_groups():
    options = OptionParser()
    options.define("a", default=1)
    options.define("with-dash", default=2, group="g")
    assert sorted(options) == ["a", "help", "with-dash"]
    assert options.as_dict() == {"a": 1, "with-dash": 2, "help": None}
    assert dict(options.items())["with-dash"] == 2
    assert options.groups() == {"", "g", __file__}
    assert options.group_dict("g") == {"with-dash": 2}
    assert options.group_dict("nonexistent") == {}


def test_parse_callbacks_run_on_final_parse_only():
    options = OptionParser()
    calls = []
    options.add_parse_callback(lambda: calls.append(1))
    options.parse_command_line(["prog"], final=False)
    assert calls == []
    options.parse_command_line(["prog"])
    options.parse_command_line(["prog"])
    assert calls == [1, 1]


def test_config_file_sets_known_options_and_parses_strings(tmp_path):
    config = tmp_path / "app.cfg"
    config.write_text(
        "port = 443\nname = '李康'\nspan = '2m'\nids = '1,2'\nunrelated = object()\nmy_path = __file__\n",
        encoding="utf-8",
    )
    options = OptionParser()
    options.define("port", default=80)
    options.define("name", default="")
    options.define("span", type=datetime.timedelta)
    options.define("ids", type=int, multiple=True)
    options.define("my_path")
    options.parse_config_file(str(config))
    assert options.port == 443 and options.name == "李康"
    assert options.span == datetime.timedelta(minutes=2)
    assert options.ids == [1, 2]
    assert options.my_path == str(config)


def test_config_file_rejects_wrong_type_for_multiple(tmp_path):
    config = tmp_path / "bad.cfg"
    config.write_text("ids = 5\n")
    options = OptionParser()
    options.define("ids", type=int, multiple=True)
    with pytest.raises(Error):
        options.parse_config_file(str(config))


def test_mockable_patches_nest_and_restore():
    options = OptionParser()
    options.define("foo", default=1)
    options.parse_command_line(["prog", "--foo=2"])
    with mock.patch.object(options.mockable(), "foo", 4):
        assert options.foo == 4
        options.foo = 5
        with mock.patch.object(options.mockable(), "foo", 6):
            assert options.foo == 6
        assert options.foo == 5
    assert options.foo == 2


def test_print_help_lists_groups_and_defaults():
    options = OptionParser()
    options.define("port", default=8888, help="port to listen on", group="net", metavar="PORT")
    stream = io.StringIO()
    options.print_help(stream)
    text = stream.getvalue()
    assert text.startswith(f"Usage: {sys.argv[0]} [OPTIONS]")
    assert "net options:" in text
    assert "--port=PORT" in text and "(default 8888)" in text


def test_global_options_define_logging_options():
    from squall import options as module

    assert "logging" in module.options and "log_file_prefix" in module.options


def test_module_level_define_groups_under_the_calling_file():
    from squall import options as module

    module.define("test_options_module_level_flag", default=7, help="defined by a test")
    assert module.options.group_dict(__file__) == {"test_options_module_level_flag": 7}
    stream = io.StringIO()
    module.print_help(stream)
    assert "--test-options-module-level-flag" in stream.getvalue()
    assert (
        module.parse_command_line(["prog", "--test-options-module-level-flag=9"], final=False) == []
    )
    assert module.options.test_options_module_level_flag == 9


def test_module_level_functions_have_the_methods_signatures_less_self():
    import inspect

    from squall import options as module

    for name in ("define", "parse_command_line", "parse_config_file", "print_help"):
        method = inspect.signature(getattr(OptionParser, name))
        function = inspect.signature(getattr(module, name))
        assert list(function.parameters) == list(method.parameters)[1:]
        assert getattr(module, name).__name__ == name
