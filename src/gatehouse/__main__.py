from gatehouse.cli.main import run

run()
