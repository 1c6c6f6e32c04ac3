"""DVC stage `epic_summary`: python stages/epic_summary.py [--params params.yaml]"""

from pipeline.cli import stage_command
from pipeline.epic_summary import run_epic_summary

main = stage_command(run_epic_summary)

if __name__ == "__main__":
    main()
