"""Planning: what a stack config or a plan implies (GPU supply and quotas, notebook profiles, serving sizing, GPU
pools a plan declares, costs). Components, the config's rules, the policy pack and the offline preview all import
these answers from here, so each is computed one way."""
