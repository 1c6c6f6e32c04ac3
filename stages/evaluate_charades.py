"""DVC stage `evaluate_charades@<member>`: python stages/evaluate_charades.py --dataset charades --variant slowfast [--params params.yaml] [--set KEY=VALUE]"""

from pipeline.cli import stage_command
from pipeline.evaluate_charades import run_evaluate_charades

main = stage_command(run_evaluate_charades, variants=True, datasets=True)

if __name__ == "__main__":
    main()
