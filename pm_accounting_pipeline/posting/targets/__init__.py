"""Accounting targets behind one adapter interface: the built-in general ledger, QuickBooks Online, Xero."""
