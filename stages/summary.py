"""DVC stage `summary@<report>`: python stages/summary.py --report epic [--params params.yaml]"""

from pipeline.cli import stage_command
from pipeline.summary import run_summary

main = stage_command(run_summary, "report")

if __name__ == "__main__":
    main()
