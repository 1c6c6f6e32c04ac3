"""DVC stage `kinetics_summary`: python stages/kinetics_summary.py [--params params.yaml] [--set KEY=VALUE]"""

from pipeline.cli import stage_command
from pipeline.kinetics_summary import run_kinetics_summary

main = stage_command(run_kinetics_summary)

if __name__ == "__main__":
    main()
