"""Tornado's own web_test cases pass with a squall Application under uvicorn (ASGIAdapter).

The run happens in a child process (tests/tornado_web_under_uvicorn.py) because it aliases
``tornado`` to squall, which this process must not do (other tests import the real Tornado
to compare with it).
"""

import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("tornado.test.web_test")

HERE = os.path.dirname(os.path.abspath(__file__))

# Test classes that check what an ASGI server cannot carry, left out on purpose:
EXCLUDED = {
    # a custom reason phrase ("HTTP/1.1 682 Foo"): ASGI's http.response.start has no
    # reason, so the server writes the standard phrase (and uvicorn refuses status 682)
    "StatusReasonTest": "no reason phrase in ASGI",
    "RaiseWithReasonTest": "no reason phrase in ASGI",
    # closes request.connection.stream, the HTTP/1 IOStream, which an ASGI request has not
    "ClientCloseTest": "reaches into the HTTP/1 IOStream",
    # count data_received calls, one per chunk the client wrote: uvicorn reads what has
    # arrived and passes it on in fewer, larger http.request messages
    "DecoratedStreamingRequestFlowControlTest": "uvicorn coalesces body chunks",
    "NativeStreamingRequestFlowControlTest": "uvicorn coalesces body chunks",
    # The server runs in a thread of its own here, the client on the test's loop:
    # a test that cancels the handler's task from the test's loop, or that checks a
    # server-side future at the moment the client has the answer, races that thread.
    "CancellationTest.test_cancelled_task": "handler task on another thread's loop",
    "FinalReturnTest.test_finish_method_return_future": "races the server thread",
}


def test_tornado_web_test_cases_pass_under_uvicorn() -> None:
    script = os.path.join(HERE, "tornado_web_under_uvicorn.py")
    result = subprocess.run(
        [sys.executable, script, "--exclude", *EXCLUDED],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.path.dirname(HERE),
    )
    report = result.stdout + result.stderr
    summary = re.search(r"ran (\d+) failures (\d+) errors (\d+)", report)
    assert summary is not None, report[-4000:]
    ran, failures, errors = (int(group) for group in summary.groups())
    assert (failures, errors) == (0, 0), report[-8000:]
    assert result.returncode == 0, report[-4000:]
    # web_test has over 200 cases outside the excluded classes; all of them ran
    assert ran >= 200, report[-2000:]
