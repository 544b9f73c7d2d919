"""Pictures and widgets for the notebooks: everything here reads live vlab objects, nothing is typed in.

    board_diagram.py   the board (CPU, timer, bus, regions) and its memory map
    levels.py          exception levels EL0-EL3, who runs where, where the CPU is now
    machine_view.py    what a machine widget shows, as plain values, text and HTML
    machine_widget.py  Step / Run N / Run / Reset on a board, with registers, code, console, exceptions
    diagram.py         the Diagram type: a graphviz picture that also prints as text
"""
