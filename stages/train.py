"""DVC stage `train@<member>`, `finetune@<dataset>-<member>`, `pretrain@<setting>`: python stages/train.py [--dataset epic] [--member slowfast] [--pretext avs] [--recipe NAME] [--params params.yaml] [--set train.epochs=2]"""

from pipeline.cli import stage_command
from pipeline.train import run_train

main = stage_command(run_train, "dataset", "member", "pretext", "recipe")

if __name__ == "__main__":
    main()
