"""`python -m demo.train`: train the shipped networks (the command lives in demo/science/train.py)."""
from demo.science.train import main

if __name__ == "__main__":
    main()
