# Writes the package's bundle (tools/fi-compile/CMakeLists.txt):
#   cmake -DFI_COMPILE=... -DDIR=... -DLIST=... -DJOBS=... [-DPTXAS=...] -P
# Incremental: a relink of libfijit alone re-runs this, and fi-compile then
# finds every kernel already in DIR. A new list or ptxas starts from an
# empty folder, so the bundle holds exactly the list; --prune drops the
# folders of earlier builds of fijit.
file(READ ${LIST} _text)
if(PTXAS)
  string(APPEND _text "# SASS by ${PTXAS}\n")
  set(_ptxas --ptxas ${PTXAS})
else()
  string(APPEND _text "# PTX only\n")
  set(_ptxas "")
endif()
set(_old "")
if(EXISTS ${DIR}/configs.txt)
  file(READ ${DIR}/configs.txt _old)
endif()
if(NOT _old STREQUAL _text)
  file(REMOVE_RECURSE ${DIR})
endif()
execute_process(
  COMMAND ${FI_COMPILE} -o ${DIR} --prune -j ${JOBS} ${_ptxas} --configs ${LIST}
  RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "fi-compile failed (${_rc}): the bundle is incomplete")
endif()
# Which configs it holds, for users and tests; written last, so a failed
# run is never taken for a finished one.
file(WRITE ${DIR}/configs.txt "${_text}")
