//! FreeSWITCH simulator.
