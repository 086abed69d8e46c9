from cnnedge.cli import run

run()
