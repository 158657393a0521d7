"""What results record about the machine: TF32's state on CUDA (it changes float32 matmul results)."""

import torch

from corrbench import environment


def test_cuda_environment_records_tf32_and_cpu_environment_does_not(monkeypatch):
    monkeypatch.setattr(environment, "device_name", lambda device: "a GPU")
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    cuda = environment.describe_environment(torch.device("cuda"), "float32", 1, 0)
    assert cuda["tf32"] == {"matmul": True, "cudnn": torch.backends.cudnn.allow_tf32}
    assert "tf32" not in environment.describe_environment(torch.device("cpu"), "float32", 1, 0)
