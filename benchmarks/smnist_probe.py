"""Probe: test accuracy of rules on smnist-rows subsets (10k train, 2k test), one thread.

    OSTTP_DATA=... python benchmarks/smnist_probe.py '{"cell":"rnn","hidden":[128],"lr":0.001,"epochs":2,
        "rules":["osttp","ostl","bptt"],"task":{"label":"every"}}'

Keys: cell, hidden, lr (Adam), epochs, rules, rec (recurrent, default true), opts (cell options),
fb (feedback scale), bs (batch, default 32), n (train subset), task (task params). Prints the test
accuracy after each epoch. Used for the OSTTP-on-smnist findings in the session notes.
"""
import sys, time, json, torch, osttp, osttp.tasks as tasks
torch.set_num_threads(1)
cfg = json.loads(sys.argv[1])
tp = cfg.get("task", {})
tr = tasks.load("smnist-rows","train", limit=cfg.get("n",10000), **tp); te = tasks.load("smnist-rows","test", limit=2000, **tp)
for rule in cfg["rules"]:
    net = osttp.Network.from_sizes([28,*cfg["hidden"],10], cell=cfg["cell"], recurrent=cfg.get("rec",True), seed=0, cell_options=cfg.get("opts"), feedback_scale=cfg.get("fb"))
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    L = osttp.make_learner(rule, net, optimizer=opt)
    t0=time.time(); accs=[]
    for ep in range(cfg["epochs"]):
        for b in tr.batches(cfg.get("bs",32), shuffle=True, seed=ep):
            L.reset(b.xs.shape[1])
            for t in range(b.xs.shape[0]): L.step(b.xs[t], b.ys[t], b.mask[t])
            L.apply()
        m = te.new_metric()
        with torch.no_grad():
            for b in te.batches(500): m.update(net(b.xs), b)
        accs.append(round(m.compute()["accuracy"],3))
    print(rule, json.dumps(cfg), accs, f"{time.time()-t0:.1f}s", flush=True)
