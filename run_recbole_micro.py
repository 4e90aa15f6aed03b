"""Train and evaluate a model (MICRO by default) on a dataset; RecBole's ``--key=value`` overrides pass through.

    python run_recbole_micro.py                                   # MICRO on the embedded ml-100k-mm
    python run_recbole_micro.py --dataset baby                    # after converting ../shared/data/baby
    python run_recbole_micro.py --model LightGCN --dataset baby   # RecBole's baseline, same split
    python run_recbole_micro.py recommend --checkpoint saved/MICRO-....pth --users 1,2 --topk 10
"""

from recbole_micro.cli import main

if __name__ == "__main__":
    main()
