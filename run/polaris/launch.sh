# shellcheck shell=bash
# The launch shared by the PBS scripts; sourced after env.sh, with `repo`, `ppn`, `layout`
# (role flags), `run` (couple flags), `name` and `mps` (1: start MPS) set by the script.
# The rank layout (node, GPU, cores of every rank) comes from `tcoupled plan`, printed
# into the job log first, so the binding below is the one `plan` shows.

# shellcheck disable=SC2154  # ppn, layout, run, name, mps: set by the sourcing script
tcoupled_launch() {
    local nodes ranks bind out gpu_ranks=0 i
    nodes=$(wc -l < "${PBS_NODEFILE}")
    ranks=$(( nodes * ppn ))
    for (( i = 0; i < ${#layout[@]}; i++ )); do
        case "${layout[i]}" in
            --sim-ranks|--train-ranks) gpu_ranks=$(( gpu_ranks + layout[i + 1] )) ;;
        esac
    done
    python -m tcoupled plan --nodes "${nodes}" --ppn "${ppn}" --gpus-per-node 4 \
        --cores-per-node 32 "${layout[@]}" --rows 0
    bind=$(python -m tcoupled plan --nodes "${nodes}" --ppn "${ppn}" --gpus-per-node 4 \
        --cores-per-node 32 "${layout[@]}" --cpu-bind)
    export TCOUPLED_PPN="${ppn}" TCOUPLED_GPU_RANKS="${gpu_ranks}" TCOUPLED_GPUS_PER_NODE=4
    out="${TCOUPLED_RUNS:-${repo}/runs}/${PBS_JOBID%%.*}-${name}"
    if [ "${mps}" = 1 ] && [ "${TCOUPLED_MPS:-1}" = 1 ]; then
        mpiexec -n "${nodes}" --ppn 1 "${repo}/run/polaris/mps.sh" start
        # shellcheck disable=SC2064  # expand now: the locals are gone at exit
        trap "mpiexec -n ${nodes} --ppn 1 '${repo}/run/polaris/mps.sh' stop" EXIT
    fi
    local binding=(--cpu-bind "${bind}")
    if [ "${bind}" = depth ]; then binding=(--depth $(( 32 / ppn )) --cpu-bind depth); fi
    echo "tcoupled: mpiexec -n ${ranks} --ppn ${ppn} ${binding[*]} -> ${out}"
    mpiexec -n "${ranks}" --ppn "${ppn}" "${binding[@]}" \
        "${repo}/run/polaris/gpu_affinity.sh" \
        python -m tcoupled couple "${layout[@]}" "${run[@]}" --out "${out}"
}
