import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="exec-based restart")

# Each test program runs twice: the first run reloads itself, the second exits.
RUN_TWICE = """
import os
import sys

import squall.autoreload

sys.stdout.flush()
if "TESTAPP_STARTED" not in os.environ:
    os.environ["TESTAPP_STARTED"] = "1"
    squall.autoreload._reload()
else:
    os._exit(0)
"""

APP_MAIN = """
import sys
try:
    import testapp
except ImportError:
    print("import failed")
else:
    print("import succeeded")
spec = getattr(sys.modules[__name__], "__spec__", None)
print(f"spec={getattr(spec, 'name', None)} wrapped={'squall.autoreload' in sys.modules} argv={sys.argv[1:]}")
exec(open("run_twice.py", encoding="utf-8").read())
"""


@pytest.fixture
def app_dir(tmp_path):
    (tmp_path / "run_twice.py").write_text(RUN_TWICE)
    package = tmp_path / "testapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(APP_MAIN)
    return tmp_path


def run(args, cwd, timeout=30):
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    )
    env.pop("TESTAPP_STARTED", None)
    result = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["-m", "testapp", "x"],
            "import succeeded\nspec=testapp.__main__ wrapped=False argv=['x']\n",
        ),
        (["testapp/__main__.py"], "import failed\nspec=None wrapped=False argv=[]\n"),
        (["testapp"], "import failed\nspec=__main__ wrapped=False argv=[]\n"),
    ],
)
def test_reload_preserves_the_command_line(app_dir, args, expected):
    assert run(args, app_dir) == expected * 2


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["-m", "testapp", "a", "--b", "-m", "c"],
            "import succeeded\nspec=testapp.__main__ wrapped=True argv=['a', '--b', '-m', 'c']\n",
        ),
        (["testapp/__main__.py"], "import succeeded\nspec=None wrapped=True argv=[]\n"),
        (["testapp"], "import succeeded\nspec=__main__ wrapped=True argv=[]\n"),
    ],
)
def test_wrapper_runs_program_and_survives_reload(app_dir, args, expected):
    assert run(["-m", "squall.autoreload", *args], app_dir) == expected * 2


def test_wrapper_until_success_stops_after_clean_exit(tmp_path):
    (tmp_path / "run_twice.py").write_text(RUN_TWICE)
    (tmp_path / "main.py").write_text(
        textwrap.dedent(
            """
            import os, sys
            if "TESTAPP_STARTED" in os.environ:
                print("exiting cleanly")
                sys.exit(0)
            print("reloading")
            exec(open("run_twice.py", encoding="utf-8").read())
            """
        )
    )
    out = run(["-m", "squall.autoreload", "--until-success", "main.py"], tmp_path)
    assert out == "reloading\nexiting cleanly\n"


def test_wrapper_without_target_prints_usage(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "squall.autoreload"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "Usage" in result.stderr


def test_changed_watched_file_restarts_and_runs_hooks(tmp_path):
    watched = tmp_path / "watched.txt"
    watched.write_text("v1")
    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            """
            import asyncio, os, sys
            from squall import autoreload

            if os.environ.get("RELOADED"):
                print("restarted with", sys.argv[1:], flush=True)
                os._exit(0)
            os.environ["RELOADED"] = "1"
            autoreload.watch(sys.argv[1])
            autoreload.add_reload_hook(lambda: print("hook ran", flush=True))

            async def main():
                autoreload.start(check_time=10)
                autoreload.start(check_time=10)  # a second start on the same loop is a no-op
                # Keep changing the file until the checker (which first records the
                # original time) notices; bounded so a broken reload fails the test.
                for step in range(1, 400):
                    os.utime(sys.argv[1], (step, step))
                    await asyncio.sleep(0.02)
                print("never restarted", flush=True)

            asyncio.run(main())
            """
        )
    )
    out = run(["app.py", str(watched)], tmp_path)
    assert out == f"hook ran\nrestarted with {[str(watched)]}\n"


def test_wrapper_waits_after_a_crash_and_reruns_on_change(tmp_path):
    # The script crashes on its first run; the wrapper then watches the files in the
    # traceback, and "fixing" the script makes it rerun.
    script = tmp_path / "main.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys, threading, time
            if os.environ.get("RERUN"):
                print("rerun ok", flush=True)
                os._exit(0)
            os.environ["RERUN"] = "1"
            print("crashing", flush=True)

            def touch():
                for step in range(1, 400):
                    os.utime(__file__, (step, step))
                    time.sleep(0.02)

            threading.Thread(target=touch, daemon=True).start()
            raise RuntimeError("boom")
            """
        )
    )
    out = run(["-m", "squall.autoreload", "main.py"], tmp_path)
    assert out == "crashing\nrerun ok\n"
