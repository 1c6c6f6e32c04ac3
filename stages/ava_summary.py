"""DVC stage `ava_summary`: python stages/ava_summary.py [--params params.yaml]"""

from pipeline.cli import stage_command
from pipeline.ava_summary import run_ava_summary

main = stage_command(run_ava_summary)

if __name__ == "__main__":
    main()
