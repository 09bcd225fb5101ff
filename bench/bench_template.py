"""Template rendering speed: squall.template against tornado.template, in one run.

    .venv/bin/python bench/bench_template.py [--seconds 2.0]

The page extends a base template, includes a header and loops over 100 rows whose
fields are autoescaped. Both engines must produce the same bytes; the script prints
renders per second for each and the ratio squall / Tornado.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable, Dict, List

TEMPLATES: Dict[str, str] = {
    "base.html": """\
<!DOCTYPE html>
<html>
  <head>
    <title>{% block title %}Squall{% end %}</title>
  </head>
  <body>
    {% include "header.html" %}
    <main>{% block body %}{% end %}</main>
    <footer>{% block footer %}rendered for {{ user }}{% end %}</footer>
  </body>
</html>
""",
    "header.html": """\
<header><a href="/">{{ site }}</a> &middot; {{ user }}</header>
""",
    "page.html": """\
{% extends "base.html" %}
{% block title %}{{ title }} - {{ site }}{% end %}
{% block body %}
  <table>
    {% for row in rows %}
    <tr class="{{ 'odd' if row['id'] % 2 else 'even' }}">
      <td>{{ row['id'] }}</td>
      <td>{{ row['name'] }}</td>
      <td>{{ row['comment'] }}</td>
      <td>{{ row['score'] }}</td>
    </tr>
    {% end %}
  </table>
{% end %}
""",
}


def make_context() -> Dict[str, Any]:
    rows: List[Dict[str, Any]] = [
        {
            "id": number,
            "name": f"user{number}",
            "comment": 'likes <b>bold</b> & "quotes"' if number % 10 == 0 else "plain text",
            "score": number * 1.5,
        }
        for number in range(100)
    ]
    return {"rows": rows, "title": "Rows & columns", "site": "example.org", "user": "ann<"}


def measure(render: Callable[[], bytes], seconds: float) -> float:
    """Renders per second over about ``seconds`` of wall time (best of 3 rounds)."""
    render()
    best = 0.0
    for _ in range(3):
        count = 0
        start = time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for _ in range(20):
                render()
            count += 20
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per engine")
    options = parser.parse_args()

    import tornado.template

    import squall.template

    context = make_context()
    squall_page = squall.template.DictLoader(TEMPLATES).load("page.html")
    tornado_page = tornado.template.DictLoader(TEMPLATES).load("page.html")

    squall_output = squall_page.generate(**context)
    tornado_output = tornado_page.generate(**context)
    if squall_output != tornado_output:
        print("outputs differ!", file=sys.stderr)
        print(squall_output.decode(), file=sys.stderr)
        print(tornado_output.decode(), file=sys.stderr)
        return 1

    squall_rate = measure(lambda: squall_page.generate(**context), options.seconds)
    tornado_rate = measure(lambda: tornado_page.generate(**context), options.seconds)
    print(f"page: {len(squall_output)} bytes, 100 escaped rows, extends + include")
    print(f"squall : {squall_rate:10.0f} renders/s")
    print(f"tornado: {tornado_rate:10.0f} renders/s")
    print(f"ratio squall/tornado: {squall_rate / tornado_rate:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
