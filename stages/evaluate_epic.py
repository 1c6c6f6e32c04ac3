"""DVC stage `evaluate_epic@<member>`: python stages/evaluate_epic.py --dataset epic --variant slowfast [--params params.yaml] [--set KEY=VALUE]"""

from pipeline.cli import stage_command
from pipeline.evaluate_epic import run_evaluate_epic

main = stage_command(run_evaluate_epic, variants=True, datasets=True)

if __name__ == "__main__":
    main()
