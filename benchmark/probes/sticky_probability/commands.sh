set -e
for s in 0 0.05 0.1 0.15 0.25; do
  for a in ppo_mlp dqn_cnn; do
    ck=benchmark/checkpoints/$a.pt
    .venv/bin/python $a.py --eval-checkpoint $ck --eval-episodes 30 --eval-sticky $s --run-dir runs/sweep_${a}_sticky$s 2>&1 | grep "^eval"
  done
done
