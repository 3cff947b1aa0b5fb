"""The load lock Lambda of the Step Functions form (load_lock.py); its folder is the function's code asset."""
