"""Long-tail experts, gating and learning to reject (Narasimhan et al., ICLR 2024)."""
