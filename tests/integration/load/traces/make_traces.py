#!/usr/bin/python3
"""Writes the small public-trace samples in this folder (issue 17), each in
its published layout, with behaviours written into them on purpose; truth.csv
says which VM has which behaviour. Run once; its output is committed, so the
tests read fixed files (and the fuzz seeds are cut from them).

Layouts: Azure AzurePublicDatasetV2.md (vm_cpu_readings: timestamp,vmid,
min cpu,max cpu,avg cpu; vmtable: 11 columns), Alibaba clusterdata
cluster-trace-v2018/schema.md (machine_usage 9 columns, container_usage 11),
Google cluster-data 2011 schema v2.1 (task_usage, 20 columns), Bitbrains
GWA-T-12 (11 ';'-separated columns with a header, rnd/<month>/<vm>.csv)."""
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
rnd = random.Random(17)
truth = []


def out(path, lines):
    path = os.path.join(HERE, path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(l + "\n" for l in lines))


def jitter(v, s):
    return max(0.0, v + rnd.uniform(-s, s))


# ---- Azure: CPU only, three levels ----
levels = {"idle": 3, "steady": 45, "busy": 88}
azure_vms = []
for b in levels:
    for i in range(3):
        vid = "".join(rnd.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(43)) + "="
        azure_vms.append((vid, b))
        truth.append(("azure", vid, b))
rows = []
for k in range(12):
    for vid, b in azure_vms:
        avg = jitter(levels[b], 2.5)
        rows.append("%d,%s,%.6f,%.6f,%.6f" % (k * 300, vid, max(0, avg - 2), avg + 3, avg))
out("azure/vm_cpu_readings-file-1-of-195.csv", rows)
cats = ["Interactive", "Delay-insensitive", "Unknown"]
out("azure/vmtable.csv", ["%s,%s,%s,0,%d,%.6f,%.6f,%.6f,%s,%s,%s" % (
    vid, "sub%02d" % i, "dep%02d" % i, 3300 + 300, 99.1, levels[b], 97.0, cats[i % 3],
    ["2", "4", ">24"][i % 3], ["4", "8", ">64"][i % 3]) for i, (vid, b) in enumerate(azure_vms)])

# ---- Alibaba machine_usage: cpu / memory / network machines ----
mach = {"cpu": (85, 30, 5, 5, 10), "memory": (20, 92, 5, 5, 10), "network": (20, 30, 70, 65, 8)}
rows = []
ids = []
for b in mach:
    for i in range(3):
        mid = "m_%d" % rnd.randint(1, 4000)
        ids.append((mid, b))
        truth.append(("alibaba-machine", mid, b))
for k in range(10):
    for mid, b in ids:
        c, m, ni, no, d = mach[b]
        gps = "" if k % 4 == 1 else "%.2f" % rnd.uniform(5, 40)  # gaps as published
        mkpi = "" if k % 4 == 1 else "%d" % rnd.randint(0, 9)
        rows.append("%s,%d,%d,%d,%s,%s,%.2f,%.2f,%.2f" % (
            mid, 386640 + 10 * k, round(jitter(c, 3)), round(jitter(m, 2)), gps, mkpi,
            jitter(ni, 2), jitter(no, 2), jitter(d, 1)))
rows.insert(7, "%s,%d,,,,,,," % (ids[0][0], 386645))  # an empty sample: skipped
rows.insert(12, "%s,%d,%d,%d,,,%.2f,%.2f,-1" % (ids[1][0], 386647, 84, 30, 5.0, 5.0))  # abnormal disk
out("alibaba/machine_usage.csv", rows)

# ---- Alibaba container_usage: cpu / disk / idle containers ----
cont = {"cpu": (90, 40, 3), "disk": (15, 40, 75), "idle": (2, 40, 2)}
rows = []
ids = []
for b in cont:
    for i in range(3):
        cid = "c_%d" % rnd.randint(1, 70000)
        ids.append((cid, "m_%d" % rnd.randint(1, 4000), b))
        truth.append(("alibaba-container", cid, b))
for k in range(10):
    for cid, mid, b in ids:
        c, m, d = cont[b]
        rows.append("%s,%s,%d,%d,%d,%.2f,%.2f,%d,%.2f,%.2f,%.2f" % (
            cid, mid, 39 + 10 * k, round(jitter(c, 3)), round(jitter(m, 2)), rnd.uniform(0.8, 2.5),
            rnd.uniform(1, 10), rnd.randint(0, 8), rnd.uniform(0, 2), rnd.uniform(0, 2), jitter(d, 2)))
out("alibaba/container_usage.csv", rows)

# ---- Google 2011 task_usage: two tasks of one job per machine ----
beh = {"cpu": (0.35, 0.05, 0.001), "memory": (0.04, 0.40, 0.001), "disk": (0.05, 0.05, 0.30)}
rows = []
jobs = []
for b in beh:
    for i in range(3):
        job = rnd.randint(3418309, 6486631515)
        machine = rnd.randint(5, 4820285492)
        jobs.append((job, machine, b))
        truth.append(("google-machine", str(machine), b))
        truth.append(("google-job", str(job), b))
for k in range(12):
    start = 600000000 + k * 300000000
    for job, machine, b in jobs:
        c, m, d = beh[b]
        for task in (0, 1):
            windows = [(start, start + 300000000)]
            if task == 1 and k == 5:  # a window split in two halves: the slot averages them
                windows = [(start, start + 150000000), (start + 150000000, start + 300000000)]
            for ws, we in windows:
                cpu, mem, dio = jitter(c, 0.02), jitter(m, 0.02), jitter(d, 0.01)
                rows.append(",".join([
                    str(ws), str(we), str(job), str(task), str(machine),
                    "%.4g" % cpu, "%.4g" % mem, "%.4g" % (mem * 1.1), "%.4g" % 0.0004,
                    "%.4g" % 0.001, "%.4g" % (mem * 1.2), "%.4g" % dio, "%.4g" % 0.0001,
                    "%.4g" % (cpu * 1.5), "%.4g" % (dio * 2), "" if k % 3 == 0 else "%.4g" % 1.9,
                    "" if k % 3 == 0 else "%.4g" % 0.008, "0", "0", "%.4g" % cpu]))
rnd.shuffle(rows)
out("google2011/task_usage/part-00000-of-00500.csv", rows)

# ---- Bitbrains rnd: the parent of month folders ----
bb = {"cpu": (80, 30, 40, 10, 5, 5), "disk": (10, 30, 30000, 25000, 5, 5), "network": (10, 30, 40, 10, 9000, 8000)}
header = ("Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\t"
          "Memory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\t"
          "Disk write throughput [KB/s];\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]")
vm = 0
for b in bb:
    for i in range(2):
        vm += 1
        truth.append(("bitbrains", str(vm), b))
        for month, t0 in (("2013-7", 1372629804), ("2013-8", 1375308204)):
            lines = [header]
            for k in range(6):
                cpu, mem, rd, wr, rx, tx = bb[b]
                cpu = jitter(cpu, 3)
                lines.append("%d;\t2;\t5851.99912;\t%.6f;\t%.6f;\t8388608;\t%.6f;\t%.6f;\t%.6f;\t%.6f;\t%.6f" % (
                    t0 + 300 * k, 5851.99912 * cpu / 100, cpu, 8388608 * jitter(mem, 2) / 100,
                    jitter(rd, 100), jitter(wr, 100), jitter(rx, 50), jitter(tx, 50)))
            out("bitbrains/rnd/%s/%d.csv" % (month, vm), lines)

out("truth.csv", ["source,vm,behaviour"] + ["%s,%s,%s" % t for t in truth])
