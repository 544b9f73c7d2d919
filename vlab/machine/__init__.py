"""The "hardware": a CPU on Unicorn, memory, devices and the board that ties them together."""

from vlab.machine.board import Board, RunResult, StopReason

__all__ = ["Board", "RunResult", "StopReason"]
