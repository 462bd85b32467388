#!/usr/bin/env python3
"""The README's try-it demo: start the fake gateway, run a real export of its weeks, say what next.

    python3 tests/try_it.py try-it-output          # 8 weeks of made-up containers
    python3 tests/try_it.py try-it-output --xlsx   # the workbooks too (needs XlsxWriter)

No Qualys account is needed: the export talks HTTP to tests/fake_gateway.py on 127.0.0.1.
"""
import argparse
import datetime as dt
import os
import subprocess
import sys

from fake_gateway import DEMO_TOKEN, SCRIPT, add_data_options, demo_gateway


def shown(path: str) -> str:
    """A path as a person would type it from here: relative when it is under the current folder."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def what_to_open(folder: str) -> list:
    """The first week's JSON, and its CSV and workbook when there are any."""
    reports = sorted(os.listdir(os.path.join(folder, "weekly_reports")))
    if not reports:
        return []
    stem = reports[0][:-len(".json")]
    opened = [os.path.join(shown(folder), "weekly_reports", reports[0])]
    for subfolder, extension in (("weekly_csv_reports", ".csv"), ("weekly_xlsx_reports", ".xlsx")):
        if os.path.exists(os.path.join(folder, subfolder, stem + extension)):
            opened.append(os.path.join(shown(folder), subfolder, stem + extension))
    return opened


def next_steps(folder: str) -> list:
    python, script = shown(sys.executable), shown(SCRIPT)
    return [
        f"  {python} {shown(__file__)} {folder}    # again: every week is already done, so nothing is fetched",
        f"  {python} {script} --rebuild_csv --output_dir {folder} --csv_columns \"containerId,name,vuln_qid\"",
        f"  {python} {script} https://gateway.qg2.apps.qualys.com --dry_run    # the weeks and QQL, no call",
        "  export QUALYS_TOKEN=...   # a token from the Qualys UI; then, with your platform's gateway:",
        f"  {python} {script} https://gateway.qg2.apps.qualys.com --output_dir reports",
    ]


def try_it(args) -> int:
    """Start the fake gateway, run a real export of its weeks into args.folder, and say what to do next."""
    gateway = demo_gateway(args).start()
    first_day = dt.date.fromisoformat(args.first_day)
    end_day = first_day + dt.timedelta(days=7 * args.weeks)
    command = [sys.executable, SCRIPT, gateway.url, "--start_date", first_day.isoformat(),
               "--end_date", end_day.isoformat(), "--output_dir", args.folder] + (["--xlsx"] if args.xlsx else [])
    print(f"A fake gateway on {gateway.url} serves {args.containers} made-up containers; exporting them:", flush=True)
    try:
        code = subprocess.call(command, env=dict(os.environ, QUALYS_TOKEN=DEMO_TOKEN))
    finally:
        gateway.stop()
    if not os.path.isdir(os.path.join(args.folder, "weekly_reports")):
        print(f"\nThe export stopped (exit {code}) before it wrote a week; its message is above.")
        return code or 1
    weeks = len(os.listdir(os.path.join(args.folder, "weekly_reports")))
    print(f"\nDone (exit {code}): {weeks} weekly JSON files in {shown(args.folder)}/. Open, for example:")
    print("\n".join(f"  {path}" for path in what_to_open(args.folder)))
    print("Next, try:")
    print("\n".join(next_steps(shown(args.folder))))
    return code


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", default="try-it-output", help="output folder of the export")
    parser.add_argument("--xlsx", action="store_true", help="write the workbooks too (needs XlsxWriter)")
    add_data_options(parser)
    return try_it(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
