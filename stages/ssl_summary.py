"""DVC stage `ssl_summary`: python stages/ssl_summary.py [--params params.yaml]"""

from pipeline.cli import stage_command
from pipeline.ssl_summary import run_ssl_summary

main = stage_command(run_ssl_summary)

if __name__ == "__main__":
    main()
