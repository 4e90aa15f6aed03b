"""Compare models on one dataset under one protocol; writes results/<dataset>.md/.png/.json (see recbole_micro/tools/).

    python run_compare.py --dataset baby --models BPR,LightGCN,LATTICE,MICRO --seeds 123,2020,7
    python run_compare.py --dataset baby --models BPR,LightGCN,LATTICE,MICRO --seeds 123,2020,7 --resume  # continue
    python run_compare.py --dataset baby --models MICRO --epochs 50 --append     # merge a separate job
    python run_compare.py --dataset baby --from-json                             # re-render the page only
"""

from recbole_micro.tools.cli import compare_main

if __name__ == "__main__":
    compare_main()
