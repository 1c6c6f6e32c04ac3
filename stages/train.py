"""DVC stage `train` (and `train_<dataset>`, `pretrain`): python stages/train.py [--dataset epic] [--variant slowfast] [--pretext avs] [--params params.yaml] [--set train.epochs=2]"""

from pipeline.cli import stage_command
from pipeline.train import run_train

main = stage_command(run_train, variants=True, datasets=True, pretexts=True)

if __name__ == "__main__":
    main()
