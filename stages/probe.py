"""DVC stage `probe@<setting>`, `probe_reference@<random|supervised>`: python stages/probe.py --backbone avs_rotation [--params params.yaml] [--set ssl.probe.mode=all]"""

from pipeline.cli import stage_command
from pipeline.probe import run_probe

main = stage_command(run_probe, "backbone")

if __name__ == "__main__":
    main()
