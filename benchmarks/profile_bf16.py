import sys, time
sys.path.insert(0, '.')
import torch, cupy as cp
from lnlib import cuda
M, D = 32768, 4096
x = torch.randn(M, D, device='cuda').to(torch.bfloat16)
g = torch.randn(D, device='cuda').to(torch.bfloat16)
dy = torch.randn(M, D, device='cuda').to(torch.bfloat16)
for _ in range(3):
    y, c = cuda.layer_norm_forward(x, g, g); cuda.layer_norm_backward(dy, c)
torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(50): y, c = cuda.layer_norm_forward(x, g, g)
t1 = time.perf_counter(); torch.cuda.synchronize(); t2 = time.perf_counter()
for _ in range(50): cuda.layer_norm_backward(dy, c)
t3 = time.perf_counter(); torch.cuda.synchronize(); t4 = time.perf_counter()
print(f"host per fwd call {(t1-t)/50*1e6:.0f} us (wall incl. gpu {(t2-t)/50*1e6:.0f}); host per bwd call {(t3-t2)/50*1e6:.0f} us (wall {(t4-t2)/50*1e6:.0f})")
