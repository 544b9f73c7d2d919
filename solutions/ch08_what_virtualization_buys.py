"""Chapter 8 exercises: what virtualization buys -- live migration and workload balancing.

Fill in each function where it says so, then check it in a notebook:

    from vlab.grading import check, load
    ch08 = load("ch08_what_virtualization_buys")   # this file, as saved now
    check("ch08.stop_and_copy", ch08.stop_and_copy)
"""

MAX_ROUNDS = 30  # as Xen's xc_domain_save had it: 30 rounds in all
MAX_FACTOR = 3  # ... and never more than 3 times the guest's memory
HIGH = 0.80  # of a host's capacity: what a host may carry after balancing


def stop_and_copy(stats, target_ms):
    """Pre-copy's stopping rule: True to pause the guest now and send what is left, False for another round.

    `stats` is a dict of what the round just done left: "round" (rounds done, 1 after the first),
    "dirty_pages" (pages dirtied since: what a pause now would send), "sent_last" (pages the last
    round sent), "sent_total" (pages sent so far, every round), "memory_pages" (the guest's pages),
    "page_ms" (milliseconds each page adds to the pause) and "state_ms" (what the pause costs besides
    its pages: the link's latency, the vCPUs' and devices' state).

    Return True in the first round in which any of these holds, and False before:
    1. the pause would meet the downtime target: state_ms, plus page_ms for each of the dirty_pages,
       is target_ms or less;
    2. MAX_ROUNDS rounds are done (whatever the target: a guest may dirty pages faster than the link);
    3. more than MAX_FACTOR times the guest's memory has been sent.
    Return a bool.
    """
    ### BEGIN SOLUTION
    pause_ms = stats["state_ms"] + stats["dirty_pages"] * stats["page_ms"]
    return (pause_ms <= target_ms or stats["round"] >= MAX_ROUNDS
            or stats["sent_total"] > MAX_FACTOR * stats["memory_pages"])
    ### END SOLUTION


def balance(hosts):
    """The migrations that leave a cluster on as few hosts as it can be, moving as few VMs as that allows.

    `hosts` is a list of dicts: "name", "on" (switched on), "capacity" (its physical CPUs) and "vms"
    (VM name -> the pCPUs it used in the last epoch). Return a list of (vm, host) pairs -- move that
    VM to that host -- such that afterwards:
    1. every pair names a VM and a host of the cluster, and no VM is moved twice;
    2. no host carries VMs using more than HIGH of its capacity (every cluster given can be so);
    3. as few hosts as possible carry VMs (the others can be switched off; a host that is off may
       receive VMs, which switches it on);
    4. of all the placements that meet 2 and 3, yours moves the fewest VMs.
    Clusters here have at most 4 hosts and 8 VMs: trying every placement is fine.
    """
    ### BEGIN SOLUTION
    from itertools import product

    names = [h["name"] for h in hosts]
    where = {vm: h["name"] for h in hosts for vm in h["vms"]}
    load = {vm: share for h in hosts for vm, share in h["vms"].items()}
    capacity = {h["name"]: h["capacity"] for h in hosts}
    vms = sorted(load)
    best = None
    for choice in product(names, repeat=len(vms)):
        used = {}
        for vm, host in zip(vms, choice):
            used[host] = used.get(host, 0) + load[vm]
        if any(total > HIGH * capacity[host] + 1e-9 for host, total in used.items()):
            continue
        moves = [(vm, host) for vm, host in zip(vms, choice) if where[vm] != host]
        key = (len(used), len(moves))
        if best is None or key < best[0]:
            best = (key, moves)
    return best[1]
    ### END SOLUTION
