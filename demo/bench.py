"""`python -m demo.bench`: the speed report (the command lives in demo/tools/bench.py)."""
from demo.tools.bench import main

if __name__ == "__main__":
    main()
