"""The child process of ``dxforge build``: one rattler-build build (with its tests) whose every
step and log line goes to stdout, the package's log file; the result is written as JSON."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from dxforge.core.util import atomic_write_text


class _LogCallback:
    """rattler-build progress callback writing every step and log line to stdout (the log file)."""

    def on_download_start(self, event: Any) -> None:
        print(f"download {event.url}", flush=True)

    def on_download_progress(self, event: Any) -> None:
        pass

    def on_download_complete(self, event: Any) -> None:
        pass

    def on_build_step(self, event: Any) -> None:
        print(f"== [{event.step_name}] {event.message}", flush=True)

    def on_log(self, event: Any) -> None:
        span = f" [{event.span}]" if event.span else ""
        print(f"{event.level}{span}: {event.message}", flush=True)


def main(arg: str) -> int:
    """Child process: one rattler-build build with tests; writes the result JSON."""
    import rattler_build

    spec = json.loads(arg)
    recipe = rattler_build.Stage0Recipe.from_file(spec["recipe"])
    results = recipe.run_build(
        variant_config=rattler_build.VariantConfig(spec["variant"]),
        tool_config=rattler_build.ToolConfiguration(test_strategy="native", compression_threads=2),
        output_dir=spec["output_dir"],
        channels=spec["channels"],
        progress_callback=_LogCallback(),
    )
    out = [
        {
            "name": r.name,
            "version": r.version,
            "build_string": r.build_string,
            "packages": [str(p) for p in r.packages],
        }
        for r in results
    ]
    if len(out) != 1:
        print(f"expected one output, got {len(out)}", file=sys.stderr)
        return 1
    atomic_write_text(Path(os.environ["DXFORGE_RESULT"]), json.dumps(out[0]))
    return 0


if __name__ == "__main__":
    code = 1
    try:
        code = main(sys.argv[1])
    except Exception as e:  # the parent reports the failure and points at this log
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
