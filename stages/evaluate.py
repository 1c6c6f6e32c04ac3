"""DVC stage `evaluate@kinetics-<member>`, `evaluate_finetuned@<dataset>-<member>`: python stages/evaluate.py --dataset epic --member slowfast [--recipe NAME] [--params params.yaml] [--set evaluate.batch_size=16]"""

from pipeline.cli import stage_command
from pipeline.evaluate import run_evaluate

main = stage_command(run_evaluate, "dataset", "member", "recipe")

if __name__ == "__main__":
    main()
