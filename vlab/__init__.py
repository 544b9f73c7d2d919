"""vlab: a virtualization lab — real AArch64 guests on Unicorn, under a hypervisor you can read."""

__version__ = "0.1.0"
