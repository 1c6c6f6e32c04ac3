"""DVC stage `charades_summary`: python stages/charades_summary.py [--params params.yaml]"""

from pipeline.cli import stage_command
from pipeline.charades_summary import run_charades_summary

main = stage_command(run_charades_summary)

if __name__ == "__main__":
    main()
