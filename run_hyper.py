"""Tune a model's hyper-parameters (RecBole's HyperTuning, or Ray Tune with ``--tool ray``); see recbole_micro/tools/.

    python run_hyper.py --model MICRO --dataset baby --algo random --max_evals 20 --epochs=100
    python run_hyper.py --model LightGCN --dataset baby --params_file LightGCN --output_file hyper_results/lightgcn-baby
    python run_hyper.py --model BPR --dataset baby --tool ray --ray_workers 2
"""

from recbole_micro.tools.cli import tune_main

if __name__ == "__main__":
    tune_main()
