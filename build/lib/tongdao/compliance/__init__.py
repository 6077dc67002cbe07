"""Compliance rules: customer identity (USCC) and, later, licence and ownership rules."""

from tongdao.compliance.uscc import UsccCheck, check_uscc, uscc_check_char

__all__ = ["UsccCheck", "check_uscc", "uscc_check_char"]
