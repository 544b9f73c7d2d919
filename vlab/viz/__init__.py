"""Pictures and widgets for the notebooks: everything here reads live vlab objects, nothing is typed in.

    board_diagram.py   the board (CPU, timer, bus, regions) and its memory map
    levels.py          exception levels EL0-EL3, who runs where, where the CPU is now
    machine_view.py    what a machine widget shows, as plain values, text and HTML
    code_map.py        which of a guest's bytes are instructions and which data, and its labels
    machine_widget.py  Step / Run N / Run / Reset on a board, with registers, code, console, exceptions
    trap_widget.py     trap controls to tick, a guest run in a VM under them: exits and the trap log
    run_loop.py        the hypervisor's run loop, drawn from its dispatch table
    gantt.py           a schedule as a Gantt chart: which vCPU ran on which physical CPU, when
    curves.py          line charts of measured points (downtime against the dirty rate, say)
    chart.py           a drawn chart: its SVG for a notebook, the same as text for a terminal
    migration_view.py  a live migration along time: its rounds, the pages dirtied meanwhile, the pause
    migration_widget.py  a guest dirtying pages at a chosen rate, migrated over a chosen link
    balance_view.py    a balancing run as a grid: hosts by epochs, utilisation, hosts off, migrations
    balance_widget.py  VMs through a day on a few hosts, under no policy, the threshold one, or yours
    walk_view.py       the nested walk as a grid: guest levels by stage-2 levels, every reference numbered
    stage2_widgets.py  the walk with level sliders, the TLBs over a working set, the host's frames
    widget_snapshot.py a widget's saved state as static HTML (the course site)
    diagram.py         the Diagram type: a graphviz picture that also prints as text

Every picture fits a 1280 x 800 projector: at most 1,000 pt wide (checked in the tests).
"""
