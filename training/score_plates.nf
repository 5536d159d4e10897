#!/usr/bin/env nextflow
// Score a campaign with Nextflow: one `fibroclass score --plate P` task per plate into OUT/parts/ (a
// shared file system), then one `--merge` task once every plate is done.
//   nextflow run training/score_plates.nf --plates PLATES --platemap PLATEMAP --out OUT \
//       --model models:/fibroclass@champion [--extra '--config my_score.yaml --device cuda']
// `-resume` skips finished tasks; a re-run plate task resumes from its finished chunks.
params.model = 'models:/fibroclass@champion'
params.extra = ''

def score = "fibroclass score ${params.plates} --platemap ${params.platemap} --model ${params.model} " +
            "--out ${params.out} --no-progress ${params.extra}"

process SCORE_PLATE {
    tag "$plate"
    cpus 8
    accelerator 1
    input:
    val plate
    output:
    val plate
    script:
    "${score} --plate '${plate}'"
}

process MERGE {
    input:
    val plates
    script:
    "${score} --merge"
}

workflow {
    plates = Channel.fromPath(params.platemap)
        .splitCsv(header: true)
        .map { row -> row.plate }
        .unique()
    MERGE(SCORE_PLATE(plates).collect())
}
