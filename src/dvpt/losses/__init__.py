"""Loss terms shared by methods (mutual-information estimators)."""
