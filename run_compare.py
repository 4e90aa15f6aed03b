"""Compare models on one dataset under one protocol; writes results/<dataset>.md/.png/.json (see recbole_micro/compare.py).

    python run_compare.py --dataset baby --models BPR,LightGCN,NGCF,MICRO --epochs 50
    python run_compare.py --dataset baby --models MICRO --epochs 50 --append     # merge a separate job
    python run_compare.py --dataset baby --from-json                             # re-render the page only
"""

from recbole_micro.compare import main

if __name__ == "__main__":
    main()
