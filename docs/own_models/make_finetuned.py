"""Write an SGE-ResNet50 with a 10-class head in the official checkpoint form ({'epoch', 'state_dict',
'acc', 'best_acc', 'optimizer'}, every key with DataParallel's 'module.' prefix), standing in for a
network you fine-tuned with the official training script.

    python docs/own_models/make_finetuned.py runs/finetuned_sge_resnet50.pth.tar
"""
import sys
from pathlib import Path

import torch
import torchvision

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/finetuned_sge_resnet50.pth.tar")
out.parent.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
# The official SGE-ResNet50's keys are torchvision's ResNet-50 keys plus layerX.Y.sge.weight / .bias (1, 64, 1, 1).
state = dict(torchvision.models.resnet50(num_classes=10).state_dict())
for stage, blocks in zip((1, 2, 3, 4), (3, 4, 6, 3)):
    for block in range(blocks):
        state[f"layer{stage}.{block}.sge.weight"] = torch.randn(1, 64, 1, 1)
        state[f"layer{stage}.{block}.sge.bias"] = torch.ones(1, 64, 1, 1)
state = {"module." + k: v for k, v in state.items()}
torch.save({"epoch": 30, "state_dict": state, "acc": torch.tensor(91.5), "best_acc": torch.tensor(91.5),
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "momentum": 0.9, "params": [0]}]}}, out)
print(f"wrote {out}")
