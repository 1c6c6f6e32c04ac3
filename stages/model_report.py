"""DVC stage `model_report`: python stages/model_report.py [--params params.yaml] [--set model.depth=101]"""

from pipeline.cli import stage_command
from pipeline.model_report import run_model_report

main = stage_command(run_model_report)

if __name__ == "__main__":
    main()
