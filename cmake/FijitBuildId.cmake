# Writes ${OUT}: FIJIT_BUILD_ID, a hash of every source that shapes the
# kernels fijit emits. The disk cache keys its version folder on it, so a
# rebuilt compiler never reads artifacts of another build of the same version.
file(GLOB_RECURSE _sources ${SRC}/lib/*.cpp ${SRC}/lib/*.h ${SRC}/include/*.h
     ${SRC}/include/*.td)
list(SORT _sources)
set(_all "")
foreach(_f ${_sources})
  file(SHA256 ${_f} _h)
  string(APPEND _all "${_h}")
endforeach()
string(SHA256 _id "${_all}")
string(SUBSTRING ${_id} 0 12 _id)
set(_text "#define FIJIT_BUILD_ID \"${_id}\"\n")
if(EXISTS ${OUT})
  file(READ ${OUT} _old)
endif()
if(NOT "${_old}" STREQUAL "${_text}")
  file(WRITE ${OUT} "${_text}")
endif()
